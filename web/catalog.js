// Products and orders: the only place that knows their JSON shapes. Fields are read
// defensively (a missing one shows as "—") so the shop keeps working as the API grows.

import { request } from './api.js';

const first = (object, ...keys) => keys.map((key) => object?.[key]).find((value) => value !== undefined && value !== null);

export const productId = (product) => first(product, 'id', 'product_id');
const productName = (product) => first(product, 'name', 'title') ?? `Product ${productId(product)}`;

function money(value) {
  const amount = Number(value);
  if (value === undefined || value === null || value === '' || !Number.isFinite(amount)) return '—';
  return amount.toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
}

function text(value) {
  return value === undefined || value === null || value === '' ? '—' : String(value);
}

/** An array from a list answer, whether bare (the seeds' shape) or wrapped. */
function items(data, ...keys) {
  if (Array.isArray(data)) return data;
  const wrapped = first(data, ...keys, 'items', 'data');
  return Array.isArray(wrapped) ? wrapped : [];
}

export async function listProducts() {
  const { data } = await request('/api/products?limit=100');
  return items(data, 'products');
}

export async function listOrders() {
  const { data } = await request('/api/orders?limit=100');
  return items(data, 'orders');
}

/** `Idempotency-Key` makes a retried submit (double click, flaky network) one order. */
export async function placeOrder(order, idempotencyKey) {
  const { data } = await request('/api/orders', {
    method: 'POST',
    body: order,
    headers: { 'Idempotency-Key': idempotencyKey },
  });
  return data;
}

function table(caption, headings, rows) {
  const element = document.createElement('table');
  const captionElement = element.createCaption();
  captionElement.className = 'visually-hidden';
  captionElement.textContent = caption;
  const headRow = element.createTHead().insertRow();
  for (const heading of headings) {
    const th = document.createElement('th');
    th.scope = 'col';
    th.textContent = heading;
    headRow.append(th);
  }
  const body = element.createTBody();
  for (const cells of rows) {
    const row = body.insertRow();
    for (const cell of cells) row.insertCell().textContent = cell;
  }
  return element;
}

export function productsTable(products) {
  return table('Products', ['Product', 'Category', 'Price', 'In stock'], products.map((product) => [
    productName(product),
    text(first(product, 'category')),
    money(first(product, 'price')),
    text(first(product, 'stock', 'quantity', 'inventory')),
  ]));
}

export function productOptions(products) {
  return products.map((product) => {
    const option = document.createElement('option');
    option.value = String(productId(product));
    const price = money(first(product, 'price'));
    option.textContent = price === '—' ? productName(product) : `${productName(product)} (${price})`;
    return option;
  });
}

export function ordersTable(orders, products) {
  const names = new Map(products.map((product) => [String(productId(product)), productName(product)]));
  return table('Your orders', ['Order', 'Product', 'Quantity', 'Total', 'Status'], orders.map((order) => {
    const product = first(order, 'product_id');
    return [
      text(first(order, 'id', 'order_id')),
      first(order, 'product_name') ?? names.get(String(product)) ?? text(product),
      text(first(order, 'quantity')),
      money(first(order, 'total_price', 'total', 'amount')),
      text(first(order, 'status')),
    ];
  }));
}

/** What to say after an order is placed. */
export function orderSummary(order) {
  const id = first(order, 'id', 'order_id');
  return id === undefined ? 'Order placed.' : `Order ${id} placed.`;
}

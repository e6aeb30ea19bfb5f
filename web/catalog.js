// Products and orders: the only place that knows their JSON shapes (components/products
// and components/orders). Money arrives as a decimal string with integer cents beside
// it; the cents are what is formatted, so no float parsing of prices.

import { request } from './api.js';

/** The API's largest page (`limit` is 1..=100). */
const PAGE = 100;

const money = (cents) =>
  (cents / 100).toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });

/** `stock` is `null` when the product's stock is not tracked. */
function stockText(stock) {
  if (stock === null) return 'unlimited';
  return stock === 0 ? 'sold out' : String(stock);
}

const totalCount = (headers) => Number(headers.get('X-Total-Count'));

/** `{ products, total }`: the first page of the catalogue, oldest first. */
export async function listProducts() {
  const { data, headers } = await request(`/api/products?limit=${PAGE}`);
  return { products: data, total: totalCount(headers) };
}

/** `{ orders, total }`: the caller's newest orders (the API lists oldest first), newest first. */
export async function listOrders() {
  let { data, headers } = await request(`/api/orders?limit=${PAGE}`);
  const total = totalCount(headers);
  if (total > PAGE) ({ data } = await request(`/api/orders?limit=${PAGE}&offset=${total - PAGE}`));
  return { orders: data.reverse(), total };
}

/** `Idempotency-Key` makes a retry of the same submit (lost answer) one order. */
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
    product.name,
    product.category,
    money(product.price_cents),
    stockText(product.stock),
  ]));
}

export function productOptions(products) {
  return products.map((product) => {
    const option = document.createElement('option');
    option.value = String(product.id);
    option.textContent = `${product.name} (${money(product.price_cents)})`;
    return option;
  });
}

export function ordersTable(orders) {
  return table('Your orders', ['Order', 'Product', 'Quantity', 'Unit price', 'Total', 'Name on the order', 'Status'],
    orders.map((order) => [
      String(order.id),
      order.product_name,
      String(order.quantity),
      money(order.unit_price_cents),
      money(order.total_price_cents),
      order.customer_name,
      order.status,
    ]));
}

/** What to say after an order is placed. */
export function orderSummary(order) {
  return `Order ${order.id} placed: ${order.quantity} × ${order.product_name}, ${money(order.total_price_cents)} in total.`;
}
